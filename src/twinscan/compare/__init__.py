"""Two scans side by side: align verdicts, run both engines, diff saved scans, render the
comparison as text and HTML.
"""
