namespace VirtioSharp.VhostUser.Protocol;

/// <summary>struct vhost_iotlb_msg (IOTLB_MSG): an IOVA range, the user address it maps to, permissions and the message type.</summary>
internal readonly record struct IotlbRequest(ulong Iova, ulong Size, ulong UserAddr, byte Perm, byte Type)
{
    /// <summary>Reads the fields (the trailing padding is not needed).</summary>
    public static IotlbRequest Parse(ref PayloadReader r) => new(r.U64(), r.U64(), r.U64(), r.U8(), r.U8());
}
