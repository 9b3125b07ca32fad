"""Files that carry provenance, made on the spot: C2PA-signed with a certificate chain made here, and metadata.

A chain is an ES256 root and a leaf with digitalSignature, the emailProtection
EKU and subject and authority key identifiers: c2pa-rs signs with it and
validates the result ("Valid", signingCredential.untrusted unless its root is
a configured trust anchor). ``fixtures()`` gives every file the provenance
tests, the fuzz suite and the browser tests use, with the status each must get.
"""

from __future__ import annotations

import datetime
import io
from functools import cache, lru_cache

from PIL import Image, PngImagePlugin

from helpers import face_like

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "AVIF": "image/avif"}


def _name(common_name: str, organization: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])


def _usage(**allowed):
    from cryptography import x509

    flags = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
    return x509.KeyUsage(**{flag: allowed.get(flag, False) for flag in flags})


@cache
def chain(organization: str, common_name: str) -> tuple[bytes, bytes, bytes]:
    """(leaf + root PEM chain, the leaf's private key PEM, the root's PEM) for a signer."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    valid = {"not_valid_before": now - day, "not_valid_after": now + 365 * day}
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organization} Test Root", organization)
    root = (x509.CertificateBuilder(subject_name=root_name, issuer_name=root_name, public_key=root_key.public_key(),
                                    serial_number=x509.random_serial_number(), **valid)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder(subject_name=_name(common_name, organization), issuer_name=root_name,
                                    public_key=leaf_key.public_key(), serial_number=x509.random_serial_number(),
                                    **valid)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + root.public_bytes(pem), key, root.public_bytes(pem)


def picture(fmt: str = "JPEG", seed: int = 5, size: int = 64, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(face_like(seed, size=size)).save(buffer, fmt, **options)
    return buffer.getvalue()


def sign(data: bytes, fmt: str, source_type: str, organization: str, tool: str, *, actions: list | None = None,
         remote_url: str | None = None, embed: bool = False) -> bytes:
    """``data`` with a C2PA manifest signed by ``organization``'s chain, declaring ``source_type``.

    c2pa-rs requires a digitalSourceType on a c2pa.created action; ``actions``
    are more after it. With ``remote_url`` the file names that address and, unless
    ``embed``, holds no manifest itself (a "cloud" manifest, as c2pa-rs's cloud.jpg).
    """
    import c2pa

    certificates, key, _ = chain(organization, f"{organization} signer")
    action = {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}
    manifest = {"claim_generator_info": [{"name": tool, "version": "1.0"}], "title": f"image.{fmt.lower()}",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [action, *(actions or [])]}}]}
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", certificates, key, None))
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        if remote_url:
            builder.set_remote_url(remote_url)
        if remote_url and not embed:
            builder.set_no_embed()
        builder.sign(signer, MIME[fmt], io.BytesIO(data), out)
    return out.getvalue()


def tampered(data: bytes) -> bytes:
    """``data`` with one byte of its image data changed after signing (a JPEG's last scan byte)."""
    changed = bytearray(data)
    changed[-10] ^= 0x55
    return bytes(changed)


def xmp_packet(description: str) -> str:
    """An XMP packet whose rdf:Description carries ``description`` (attributes, then ``/>`` or children)."""
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            f'{description}</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def xmp_jpeg(source_type: str, description: str | None = None, encoding: str = "utf-8") -> bytes:
    description = description or ('xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
                                  f'Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/>')
    return picture("JPEG", xmp=xmp_packet(description).encode(encoding))


def xmp_png() -> bytes:
    """A PNG whose XMP declaring AI generation is in a compressed iTXt chunk: not in the file's bytes as text."""
    info = PngImagePlugin.PngInfo()
    description = ('xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
                   f'Iptc4xmpExt:DigitalSourceType="{IPTC}trainedAlgorithmicMedia"/>')
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(description), zip=True)
    return picture("PNG", pnginfo=info)


# The same declaration as other writers put it: another prefix, single quotes,
# spaces around "=", the element form, character references, UTF-16.
XMP_VARIANTS = {
    "prefix": "xmlns:ext='http://iptc.org/std/Iptc4xmpExt/2008-02-29/' ext:DigitalSourceType = "
              f"'{IPTC}trainedAlgorithmicMedia'/>",
    "element": 'xmlns:Iptc = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"><Iptc:DigitalSourceType>'
               f"\n  {IPTC}trainedAlgorithmicMedia\n</Iptc:DigitalSourceType></rdf:Description>",
    "resource": 'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
                f"<Iptc4xmpExt:DigitalSourceType rdf:resource='{IPTC}trainedAlgorithmicMedia'/></rdf:Description>",
    "references": 'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" Iptc4xmpExt:DigitalSourceType='
                  f'"{IPTC}&#x74;rained&#65;lgorithmicMedia"/>',
}


def png_text_bomb(chunks: int = 10_000) -> bytes:
    """A PNG with ``chunks`` compressed iTXt chunks of an unknown compression method (Pillow skips them)."""
    import struct
    import zlib

    body = zlib.compress(b"A" * 64 * 1024, 9)
    data = picture("PNG")
    extra = b"".join(
        struct.pack(">I", len(part)) + b"iTXt" + part + struct.pack(">I", zlib.crc32(b"iTXt" + part))
        for part in (f"k{index}".encode() + b"\x00\x01\x07\x00\x00" + body for index in range(chunks)))
    return data[:33] + extra + data[33:]


def png_with_text(chunks: dict[str, str], compressed: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        if compressed:
            info.add_text(key, value, zip=True)
        else:
            info.add_text(key, value)
    return picture("PNG", pnginfo=info)


def exif_jpeg(**fields) -> bytes:
    exif = Image.Exif()
    tags = {"Software": 0x0131, "Make": 0x010F, "Model": 0x0110, "Artist": 0x013B}
    for name, value in fields.items():
        exif[tags[name]] = value
    return picture("JPEG", exif=exif)


A1111 = ("portrait photo of a woman, 35mm, sharp focus\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M "
         "Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model: sd_xl_base_1.0")


@lru_cache(maxsize=1)
def fixtures() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the provenance status it must get with ``trusted_root()`` as the trust list)."""
    ai = sign(picture("JPEG"), "JPEG", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine")
    return {
        "c2pa_ai.jpg": (ai, "declared_ai"),
        "c2pa_ai.png": (sign(picture("PNG"), "PNG", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine"),
                        "declared_ai"),
        "c2pa_ai.webp": (sign(picture("WEBP"), "WEBP", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine"),
                         "declared_ai"),
        "c2pa_ai.avif": (sign(picture("AVIF"), "AVIF", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine"),
                         "declared_ai"),
        "c2pa_camera.jpg": (sign(picture("JPEG", seed=6), "JPEG", "digitalCapture", "Pocket Camera Co", "PocketCam"),
                            "untrusted_capture"),
        "c2pa_trusted_camera.jpg": (sign(picture("JPEG", seed=7), "JPEG", "digitalCapture", "Trusted Newsroom",
                                         "NewsCam"), "trusted_capture"),
        "c2pa_signed.jpg": (sign(picture("JPEG", seed=8), "JPEG", "digitalCreation", "Photo Editor Ltd", "Editor"),
                            "signed"),
        "c2pa_tampered.jpg": (tampered(ai), "tampered"),
        "xmp_ai.jpg": (xmp_jpeg("trainedAlgorithmicMedia"), "declared_ai"),
        "xmp_capture.jpg": (xmp_jpeg("digitalCapture"), "none"),
        "a1111.png": (png_with_text({"parameters": A1111}), "declared_ai"),
        "comfyui.png": (png_with_text({"prompt": '{"3": {"class_type": "KSampler", "inputs": {}}}'}, compressed=True),
                        "declared_ai"),
        "exif_firefly.jpg": (exif_jpeg(Software="Adobe Firefly"), "declared_ai"),
        "exif_camera.jpg": (exif_jpeg(Make="Canon", Model="EOS R5", Software="Adobe Photoshop 25.0"), "none"),
        "plain.png": (picture("PNG", seed=9), "none"),
        # Never fetched: the address is a closed local port (the fetch tests use a listening one).
        "c2pa_remote.jpg": (sign(picture("JPEG"), "JPEG", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine",
                                 remote_url="http://127.0.0.1:9/manifest.c2pa"), "remote"),
        "c2pa_many_actions.jpg": (sign(picture("JPEG"), "JPEG", "digitalCreation", "Imagine AI Inc", "Imagine",
                                       actions=[*({"action": "c2pa.edited", "digitalSourceType": IPTC + f"minor{k}"}
                                                  for k in range(10)),
                                                {"action": "c2pa.edited",
                                                 "digitalSourceType": IPTC + "trainedAlgorithmicMedia"}]),
                                  "declared_ai"),
        **{f"xmp_{name}.jpg": (xmp_jpeg("", description), "declared_ai") for name, description in XMP_VARIANTS.items()},
        "xmp_utf16.jpg": (xmp_jpeg("trainedAlgorithmicMedia", encoding="utf-16-be"), "declared_ai"),
        "xmp_compressed.png": (xmp_png(), "declared_ai"),
        # A manifest with more JUMBF boxes than the reader is given: not read.
        "c2pa_many_boxes.jpg": (ai + b"jumd" * 1_001, "unavailable"),
        "png_text_bomb.png": (png_text_bomb(), "unavailable"),  # more chunks than are walked
    }


def trusted_root() -> bytes:
    """The PEM of the one root on the test trust list: the "Trusted Newsroom" signer's."""
    return chain("Trusted Newsroom", "Trusted Newsroom signer")[2]
