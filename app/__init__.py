"""Use-cases, persistence and the command line. No Qt, no llama_cpp here."""
