using VirtioSharp.Queues;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>
/// The 32-bit value of SET_VRING_BASE / GET_VRING_BASE. Split rings: the next avail index. Packed rings (QEMU 7.2
/// encoding): next avail offset in bits 0-14, avail wrap counter in bit 15, next used offset in bits 16-30, used wrap
/// counter in bit 31.
/// </summary>
internal static class VringBase
{
    /// <summary>The position a packed ring's base names (offsets are checked against the ring by the queue).</summary>
    public static QueuePosition DecodePacked(uint value) =>
        new((ushort)(value & 0x7FFF), (value & 1u << 15) != 0, (ushort)(value >> 16 & 0x7FFF), (value & 1u << 31) != 0);

    /// <summary>GET_VRING_BASE's answer for a queue at <paramref name="p"/>.</summary>
    public static uint Encode(QueuePosition p, bool packed) => packed
        ? (uint)(p.NextAvail & 0x7FFF) | (p.AvailWrap ? 1u << 15 : 0) | (uint)(p.NextUsed & 0x7FFF) << 16 | (p.UsedWrap ? 1u << 31 : 0)
        : p.NextAvail;
}
