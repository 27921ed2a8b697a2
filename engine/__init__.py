"""Inference: llama.cpp, memory tricks and synthetic models. No Qt here."""
