from chestlens.cli import main

main()
