"""Answer checking of teacher traces against FLAN's references (stage `verify`): rule checks from
`answers.check`, an optional judge model for open answers, the removal policy and the stats."""
