using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Protocol;

/// <summary>GET_CONFIG / SET_CONFIG's header (offset, size, flags) before the config bytes; at most 256 bytes of config (vhost-user.rst).</summary>
internal readonly record struct ConfigRequest(uint Offset, uint Size, uint Flags)
{
    /// <summary>Largest config space a message carries.</summary>
    public const uint MaxSize = 256;

    /// <summary>Reads the header and checks the payload holds the <see cref="Size"/> bytes that follow.</summary>
    public static ConfigRequest Parse(ref PayloadReader r, VhostRequest request)
    {
        var c = new ConfigRequest(r.U32(), r.U32(), r.U32());
        if (c.Size > MaxSize || c.Offset > MaxSize || r.Remaining < c.Size)
            throw new VhostProtocolException($"{request}: offset {c.Offset} size {c.Size} with {r.Remaining} payload bytes");
        return c;
    }
}
