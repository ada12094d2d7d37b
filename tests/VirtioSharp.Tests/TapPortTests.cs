using System.Buffers.Binary;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Net.Tap;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// The TAP port against the real kernel, inside a network namespace the test creates: the driver pings the namespace
/// through device → TAP → kernel → TAP → device, once with the checksum done by the driver and once left to the offload
/// (NEEDS_CSUM carried through the header).
/// </summary>
public class TapPortTests
{
    private static readonly byte[] GuestMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    private static readonly byte[] GuestIp = [10, 77, 0, 2], HostIp = [10, 77, 0, 1];

    private static ushort Checksum(ReadOnlySpan<byte> b)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < b.Length; i += 2) sum += (uint)(b[i] << 8 | b[i + 1]);
        if (b.Length % 2 == 1) sum += (uint)(b[^1] << 8);
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>An Ethernet + IPv4 + ICMP echo request; <paramref name="icmpChecksum"/> false leaves it to the offload.</summary>
    private static byte[] EchoRequest(byte[] hostMac, ushort seq, int payload, bool icmpChecksum)
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

    [Fact]
    public void TheDriverPingsANamespaceThroughTheTap()
    {
        using var ns = new NetNamespace();
        string tapName = "vst" + Guid.NewGuid().ToString("N")[..8];
        using var tap = TapPort.Open(tapName);
        ns.TakeInterface(tapName, "10.77.0.1/24");
        // A fixed neighbour entry: the kernel answers without asking who 10.77.0.2 is first.
        ns.In("neigh", "add", "10.77.0.2", "lladdr", "52:54:00:12:34:56", "dev", tapName);
        var hostMac = Convert.FromHexString(ns.In("-br", "link", "show", "dev", tapName).Split(' ', StringSplitOptions.RemoveEmptyEntries)[2].Replace(":", ""));

        var dev = new NetDevice<RMem>([tap], new NetDeviceOptions { ControlQueue = false, Mac = GuestMac });
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
        using (var drv = NetDriver.Probe(fe, fe.Environment(pollBudget: 2000)))
        {
            for (ushort seq = 1; seq <= 4; seq++)
            {
                bool offload = seq % 2 == 0;
                var request = EchoRequest(hostMac, seq, 1000, icmpChecksum: !offload);
                var hdr = offload ? new VirtioNetHdr(NetHdrFlags.NeedsCsum, NetGsoType.None, 0, 0, 34, 2, 0) : default;
                Assert.True(drv.Send(request, hdr));
                NetDriver.ReceivedFrame reply;
                // The namespace may send its own frames first (IPv6 router solicitations): skip anything but IPv4 ICMP.
                do reply = drv.Receive();
                while (!(reply.Frame.Length > 34 && reply.Frame[12] == 0x08 && reply.Frame[13] == 0 && reply.Frame[23] == 1));
                var f = reply.Frame;
                Assert.Equal(GuestMac, f[..6]);
                Assert.Equal(0, f[34]);                                            // echo reply
                Assert.Equal(seq, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(40)));
                Assert.Equal(request.AsSpan(42).ToArray(), f[42..(42 + 1000)]);   // the payload came back
                Assert.Equal(0, Checksum(f.AsSpan(34, 8 + 1000)));                 // ICMP checksum verifies
            }
        }
        var st = dev.Stats;
        Assert.Equal(4, st.TxPackets);
        Assert.True(st.RxPackets >= 4);
        Assert.Equal(0, st.CopiedFrames);
        Assert.Equal(0, tap.WriteErrors);
        Assert.Empty(rig.ResetLines);
    }
}
