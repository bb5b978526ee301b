"""Answer checking against FLAN references, one library for `eval` (scoring students) and
`verify` (checking teacher traces).

- `text`: tokens, the normal form (case, punctuation, articles but not option labels), numbers
  with units.
- `options`: the options a question lists (FLAN's option formats), and which one a reference names.
- `kinds`: what a prompt asks for (a generation, a question, the reasoning behind a given answer).
- `extract`: answer cues, sentences, the number a response commits to, a reference's short answer.
- `choice`: the option (or label) a response commits to; the final answer wins.
- `check`: the answer kind and the verdict (`check_answer`, `check_frame`); its docstring has the rules.
- `score`: eval's right/wrong per reply and accuracy per submix.
"""
