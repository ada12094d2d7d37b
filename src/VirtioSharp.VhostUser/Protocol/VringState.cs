namespace VirtioSharp.VhostUser.Protocol;

/// <summary>struct vhost_vring_state (SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE): a ring index and a number.</summary>
internal readonly record struct VringState(uint Index, uint Num)
{
    /// <summary>Reads the 8-byte payload.</summary>
    public static VringState Parse(ref PayloadReader r) => new(r.U32(), r.U32());
}
