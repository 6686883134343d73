"""ToolGen core: tool catalog, virtualization, model, constrained decoding, training, agent and executors."""
