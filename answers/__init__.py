"""Answer checking against FLAN references, one library for `eval` (scoring students) and
`verify` (checking teacher traces).

- `text`: tokens, the normal form (case, punctuation, articles), numbers with units.
- `options`: the options a question lists, and which one a reference names.
- `extract`: the final answer a response commits to (an option, a label, a number, a span).
- `check`: the answer kind and the verdict (`check_answer`, `check_frame`); its docstring has the rules.
- `score`: eval's right/wrong per reply and accuracy per submix.
"""
