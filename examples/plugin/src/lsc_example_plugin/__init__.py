"""An example lsc plugin (docs/extending.md): a scheme, a step metric and a channel model."""
