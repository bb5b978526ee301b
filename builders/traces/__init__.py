"""Stage `traces` (`python -m builders.traces`): teacher answers to every prompt through the
generation library, planned per teacher, filtered, written as the trace table; and the bill before
a run (`estimate`)."""
