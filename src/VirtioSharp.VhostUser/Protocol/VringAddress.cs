namespace VirtioSharp.VhostUser.Protocol;

/// <summary>struct vhost_vring_addr (SET_VRING_ADDR): the three ring areas in the front-end's address space (or IOVAs).</summary>
internal readonly record struct VringAddress(uint Index, uint Flags, ulong Desc, ulong Used, ulong Avail, ulong Log)
{
    /// <summary>Reads the 40-byte payload.</summary>
    public static VringAddress Parse(ref PayloadReader r) => new(r.U32(), r.U32(), r.U64(), r.U64(), r.U64(), r.U64());
}
