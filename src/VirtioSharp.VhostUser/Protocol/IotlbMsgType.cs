namespace VirtioSharp.VhostUser.Protocol;

/// <summary>IOTLB message types and permissions (struct vhost_iotlb_msg).</summary>
internal static class IotlbMsgType
{
    public const byte Miss = 1, Update = 2, Invalidate = 3, AccessFail = 4;
    public const byte PermNone = 0, PermRead = 1, PermWrite = 2, PermReadWrite = 3;
    /// <summary>iova u64, size u64, uaddr u64, perm u8, type u8, padding to 8.</summary>
    public const int Length = 32;
}
