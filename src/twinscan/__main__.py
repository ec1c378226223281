from twinscan.cli import console

console()
