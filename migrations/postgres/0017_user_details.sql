-- Keystone's optional user attributes (issue 10 B.11): `openstack user create --description
-- --email` keeps them and `openstack user show` reads them back.
ALTER TABLE users ADD COLUMN description TEXT;
ALTER TABLE users ADD COLUMN email TEXT;
