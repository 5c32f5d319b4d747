"""The shared base every stage stands on: errors, atomic files, user-given names, number formatting, array reading."""
