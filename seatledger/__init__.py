"""seatledger package."""
