from twinscan.cli import main

main()
