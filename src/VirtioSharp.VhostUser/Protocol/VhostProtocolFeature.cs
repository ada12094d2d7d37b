namespace VirtioSharp.VhostUser.Protocol;

/// <summary>Protocol feature bits (GET/SET_PROTOCOL_FEATURES).</summary>
internal static class VhostProtocolFeature
{
    public const int Mq = 0, LogShmfd = 1, Rarp = 2, ReplyAck = 3, Mtu = 4, BackendReq = 5, CrossEndian = 6;
    public const int CryptoSession = 7, Pagefault = 8, Config = 9, BackendSendFd = 10, HostNotifier = 11;
    public const int InflightShmfd = 12, ResetDevice = 13, InbandNotifications = 14, ConfigureMemSlots = 15, Status = 16;
}
