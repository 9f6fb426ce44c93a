"""`make run`: the orchestration on top of the stages and the stack (`python -m run`)."""
