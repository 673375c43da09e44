from nima.cli import main

main()
