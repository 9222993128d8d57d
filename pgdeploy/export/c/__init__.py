"""The C99 target: source generation, compilation and the verified export of policy.c/.h."""
