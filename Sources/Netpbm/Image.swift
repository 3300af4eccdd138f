import CNetpbm
