"""Acting without being asked: schedules that add tasks, rules that react to file changes and events, hooks."""
