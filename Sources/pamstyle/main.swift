print("pamstyle")
