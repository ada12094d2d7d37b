using System.Buffers.Binary;

namespace VirtioSharp.Spec.Net;

/// <summary>
/// The RARP request a host broadcasts for a guest after a live migration (RFC 903 over Ethernet, as vhost-user.rst's
/// VHOST_USER_SEND_RARP asks): broadcast destination, the guest's MAC as source, sender and target hardware address,
/// protocol addresses zero, padded to the 60-byte Ethernet minimum. Switches learn the guest's new port from its source.
/// </summary>
public static class RarpFrame
{
    /// <summary>Bytes of the frame (the Ethernet minimum without the FCS).</summary>
    public const int Length = 60;
    /// <summary>The RARP EtherType.</summary>
    public const ushort EtherType = 0x8035;
    /// <summary>ar$op of a reverse request (RFC 903).</summary>
    public const ushort OpReverseRequest = 3;

    /// <summary>Writes the frame for <paramref name="mac"/> into the first <see cref="Length"/> bytes of <paramref name="frame"/>.</summary>
    public static void Write(Span<byte> frame, ReadOnlySpan<byte> mac)
    {
        if (mac.Length != NetConfig.MacLength) throw new ArgumentException($"a MAC address has {NetConfig.MacLength} bytes, got {mac.Length}", nameof(mac));
        if (frame.Length < Length) throw new ArgumentException($"the frame needs {Length} bytes, got {frame.Length}", nameof(frame));
        var f = frame[..Length];
        f.Clear();
        f[..6].Fill(0xFF);                                                   // destination: broadcast
        mac.CopyTo(f[6..]);                                                  // source: the guest
        BinaryPrimitives.WriteUInt16BigEndian(f[12..], EtherType);
        BinaryPrimitives.WriteUInt16BigEndian(f[14..], 1);                   // ar$hrd: Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(f[16..], 0x0800);              // ar$pro: IPv4
        f[18] = NetConfig.MacLength;                                         // ar$hln
        f[19] = 4;                                                           // ar$pln
        BinaryPrimitives.WriteUInt16BigEndian(f[20..], OpReverseRequest);
        mac.CopyTo(f[22..]);                                                 // ar$sha; ar$spa 0
        mac.CopyTo(f[32..]);                                                 // ar$tha; ar$tpa 0, then padding
    }
}
