namespace VirtioSharp.VhostUser.Protocol;

/// <summary>Back-end requests sent on the back-end channel.</summary>
internal enum VhostBackendRequest : uint
{
    IotlbMsg = 1,
    ConfigChangeMsg = 2,
    VringHostNotifierMsg = 3,
}
