using System.Buffers.Binary;

namespace VirtioSharp.Tests.Support;

/// <summary>Hand-built IPv4 ICMP echo frames between a test "guest" (10.77.0.2) and a namespace (10.77.0.1).</summary>
internal static class Icmp
{
    internal static readonly byte[] GuestMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    internal static readonly byte[] GuestIp = [10, 77, 0, 2], HostIp = [10, 77, 0, 1];

    internal static ushort Checksum(ReadOnlySpan<byte> b)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < b.Length; i += 2) sum += (uint)(b[i] << 8 | b[i + 1]);
        if (b.Length % 2 == 1) sum += (uint)(b[^1] << 8);
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>An Ethernet + IPv4 + ICMP echo request; <paramref name="icmpChecksum"/> false leaves it to the offload.</summary>
    internal static byte[] EchoRequest(byte[] hostMac, ushort seq, int payload, bool icmpChecksum)
    {
        var f = new byte[14 + 20 + 8 + payload];
        hostMac.CopyTo(f, 0);
        GuestMac.CopyTo(f, 6);
        f[12] = 0x08; f[13] = 0x00;
        var ip = f.AsSpan(14, 20);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + 8 + payload));
        ip[8] = 64; ip[9] = 1;
        GuestIp.CopyTo(ip[12..]);
        HostIp.CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Checksum(ip));
        var icmp = f.AsSpan(34);
        icmp[0] = 8;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[4..], 0x1234);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[6..], seq);
        for (int i = 0; i < payload; i++) icmp[8 + i] = (byte)(i * 7 + seq);
        if (icmpChecksum) BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum(icmp));
        else
        {
            // NEEDS_CSUM: the checksum field holds the pseudo-header sum (none for ICMP: 0) and the port's peer finishes it.
            BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], 0);
        }
        return f;
    }

    /// <summary>The namespace side's MAC address of <paramref name="dev"/>.</summary>
    internal static byte[] MacOf(NetNamespace ns, string dev) =>
        Convert.FromHexString(ns.In("-br", "link", "show", "dev", dev).Split(' ', StringSplitOptions.RemoveEmptyEntries)[2].Replace(":", ""));

    /// <summary>Whether <paramref name="f"/> is an IPv4 ICMP frame (the namespace also sends IPv6 router solicitations).</summary>
    internal static bool IsIcmp4(byte[] f) => f.Length > 34 && f[12] == 0x08 && f[13] == 0 && f[23] == 1;
}
