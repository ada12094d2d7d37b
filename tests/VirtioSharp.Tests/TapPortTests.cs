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
    [Fact]
    public void TheDriverPingsANamespaceThroughTheTap()
    {
        using var ns = new NetNamespace();
        string tapName = "vst" + Guid.NewGuid().ToString("N")[..8];
        using var tap = TapPort.Open(tapName);
        ns.TakeInterface(tapName, "10.77.0.1/24");
        // A fixed neighbour entry: the kernel answers without asking who 10.77.0.2 is first.
        ns.In("neigh", "add", "10.77.0.2", "lladdr", "52:54:00:12:34:56", "dev", tapName);
        var hostMac = Icmp.MacOf(ns, tapName);

        var dev = new NetDevice<RMem>([tap], new NetDeviceOptions { ControlQueue = false, Mac = Icmp.GuestMac });
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
        using (var drv = NetDriver.Probe(fe, fe.Environment(pollBudget: 2000)))
        {
            for (ushort seq = 1; seq <= 4; seq++)
            {
                bool offload = seq % 2 == 0;
                var request = Icmp.EchoRequest(hostMac, seq, 1000, icmpChecksum: !offload);
                var hdr = offload ? new VirtioNetHdr(NetHdrFlags.NeedsCsum, NetGsoType.None, 0, 0, 34, 2, 0) : default;
                Assert.True(drv.Send(request, hdr));
                NetDriver.ReceivedFrame reply;
                // The namespace may send its own frames first (IPv6 router solicitations): skip anything but IPv4 ICMP.
                do reply = drv.Receive();
                while (!Icmp.IsIcmp4(reply.Frame));
                var f = reply.Frame;
                Assert.Equal(Icmp.GuestMac, f[..6]);
                Assert.Equal(0, f[34]);                                            // echo reply
                Assert.Equal(seq, BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(40)));
                Assert.Equal(request.AsSpan(42).ToArray(), f[42..(42 + 1000)]);   // the payload came back
                Assert.Equal(0, Icmp.Checksum(f.AsSpan(34, 8 + 1000)));                 // ICMP checksum verifies
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
