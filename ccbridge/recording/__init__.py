"""Call recording (issue 14): policy, MixMonitor files, central encrypted storage, playback."""
