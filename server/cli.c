/* placeholder: the sitesync operator CLI is being written */
int main(void) { return 2; }
