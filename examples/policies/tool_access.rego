package tool_access

# Allow tool execution if user has permission
allow {
    input.action == "execute"
    input.user.roles[_] == "admin"
}

allow {
    input.action == "execute"
    input.user.roles[_] == "user"
    input.user.permissions[_] == "tool:execute"
}

# Deny access to high-security tools
deny {
    input.action == "execute"
    input.tool.security_level > 2
    input.user.roles[_] != "admin"
}
