"""Files written atomically, the output-folder lock, process helpers, progress on stderr."""
