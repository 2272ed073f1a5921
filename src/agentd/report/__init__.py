"""What people are shown: the status dashboard's data and the doctor's findings (no printing here)."""
