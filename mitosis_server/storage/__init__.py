"""Object stores for artifacts and attachments: S3 (production) and a local directory."""
