"""Password files, hashing and login throttling shared by the admin UI and SMTP AUTH.

Neither the admin web app nor the SMTP front owns these: both keep users in
the same scrypt file format, check passwords on the same bounded pool and
slow down guessing with the same throttle.
"""

from relay.credentials.hashing import HashingBusy, HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB, UsersFileError

__all__ = ["HashingBusy", "HashingPool", "LoginThrottle", "UserDB", "UsersFileError"]
