using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>
/// SET_VRING_KICK / CALL / ERR's u64: the ring index in bits 0-7 and, in bit 8, "no fd" (vhost-user.rst). Other bits
/// are reserved and refused.
/// </summary>
internal readonly record struct VringFile(uint Index, bool NoFd)
{
    /// <summary>Reads and validates the payload.</summary>
    public static VringFile Parse(ref PayloadReader r, VhostRequest request)
    {
        ulong u = r.U64();
        if ((u & ~0x1FFUL) != 0) throw new VhostProtocolException($"{request}: reserved bits set in 0x{u:x}");
        return new((uint)(u & 0xFF), (u & 0x100) != 0);
    }
}
