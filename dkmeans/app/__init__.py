"""The product on top of the public API: the archetype job (pipeline), the CLI, cluster
configs (deploy), plots and generated datasets."""
