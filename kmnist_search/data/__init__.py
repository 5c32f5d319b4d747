"""What the pipeline reads and writes: the datasets, the search spaces, the model's input contract, the study's
figures, and the run record with its folder."""
