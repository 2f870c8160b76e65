"""Launch files, parameter files and the fake-robot node for the RDT suite."""
