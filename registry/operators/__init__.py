"""Operators: the verified real people behind avatars."""
