print("iwae")
