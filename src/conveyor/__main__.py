from conveyor.cli.main import main

if __name__ == "__main__":  # (not when a spawned submitter process imports it)
    main()
