"""What several test modules share: tiny settings, store readers, refusal checks, servers and venvs."""
