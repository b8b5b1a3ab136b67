"""The simulated task suite on robosuite: tasks, scenes, fast rendering, envs, gymnasium wrapper,
scripted experts, collection, replay."""
