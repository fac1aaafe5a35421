from netsetup.cli import main

main()
