"""A run, read: rankings and effects, figures, the HTML page, and the summary in every format."""
