package admin_access

# Only admins can access admin functions
allow {
    input.action == "admin"
    input.user.roles[_] == "admin"
}

# Deny all other admin access
deny {
    input.action == "admin"
    not input.user.roles[_] == "admin"
}
