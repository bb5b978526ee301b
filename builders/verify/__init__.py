"""Stage `verify` (`python -m builders.verify`): answer checking of teacher traces against FLAN's
references: rule checks from `answers.check`, an optional judge model for open answers (through the
generation library), the removal policy and the stats."""
