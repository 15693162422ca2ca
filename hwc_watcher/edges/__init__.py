"""The IO edges: IMAP, SMTP, HTTPS, systemd, secret and pupil-list files, the one time limit."""
