"""What a site ships besides its pages: click data (interact.py), CSV downloads (downloads.py), the check
figures under each tensor (checks.py), and the comparison of two runs (compare.py)."""
