"""Workspaces: a git worktree and branch per task, so parallel agents never share a checkout, and finished work
merged back into the base branch safely."""
