"""Screens: the login screen, the main screen with its panes, help and modal forms."""
